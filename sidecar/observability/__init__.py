"""Observers: metrics and logs. Anything may call them; they call nothing back."""

"""What many test modules share: entry factories, fake tiers, the manual clock fixture and
the tier contract every tier and every fake tier is checked by. Test support only: nothing
under `sidecar/` or `kong_plugin/` may import it."""

"""Which Kong kongsim answers as: the release in ``Server``/``Via`` headers and plugin versions.

Only the version string is emulated: kongsim does not switch behaviour by release (everything
follows Kong 3.9.3, see the fidelity table in ``kongsim/README.md``).
"""

KONG_VERSION = "3.9.3"
SERVER_HEADER = f"kong/{KONG_VERSION}"

"""csc_packer: pack processed volumes into a valid challenge submission zip."""

__version__ = "0.1.0"

"""One module per screen (the wizard has a package: one screen per step)."""

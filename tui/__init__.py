"""tunewiz.tui"""

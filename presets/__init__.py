"""tunewiz.presets"""

"""tunewiz.engine"""

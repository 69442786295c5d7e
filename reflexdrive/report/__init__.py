"""Reporting a compare: the HTML/markdown report, its plots and tables, and MP4 videos of
episodes with the stack's products and the clock drawn over the scene."""

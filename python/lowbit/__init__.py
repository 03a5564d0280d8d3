"""lowbit"""

"""hashlab"""

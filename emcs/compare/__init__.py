"""emcs.compare"""

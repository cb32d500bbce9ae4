"""emcs.sim"""

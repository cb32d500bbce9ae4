"""emcs.simulate"""

"""emcs.tcs"""

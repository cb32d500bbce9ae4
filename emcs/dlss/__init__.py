"""emcs.dlss"""

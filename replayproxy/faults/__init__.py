"""replayproxy/faults"""

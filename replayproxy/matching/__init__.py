"""replayproxy/matching"""

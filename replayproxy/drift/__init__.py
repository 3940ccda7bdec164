"""replayproxy/drift"""

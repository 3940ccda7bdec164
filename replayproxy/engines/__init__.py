"""replayproxy/engines"""

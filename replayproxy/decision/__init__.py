"""replayproxy/decision"""

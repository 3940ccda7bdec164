"""replayproxy/formats"""

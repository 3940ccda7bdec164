"""replayproxy/engines/mitm"""

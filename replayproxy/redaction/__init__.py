"""replayproxy/redaction"""

"""replayproxy/drift/report"""

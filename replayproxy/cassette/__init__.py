"""replayproxy/cassette"""

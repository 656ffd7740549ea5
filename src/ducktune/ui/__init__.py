"""ducktune.ui"""

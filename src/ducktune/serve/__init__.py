"""ducktune.serve"""

"""ducktune.export"""

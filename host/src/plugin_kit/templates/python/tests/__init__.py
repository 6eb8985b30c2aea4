"""The unit tests of the plugin's policy (src/logic.py): python3 -m unittest"""

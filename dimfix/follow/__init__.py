"""Following values to where they are written (origin.py is the entry)."""

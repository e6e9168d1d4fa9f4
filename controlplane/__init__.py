"""Client side: bring clusters up and down, submit and follow jobs.

python -m controlplane up|down|status|submit|evaluate   (the Makefile calls these)
"""

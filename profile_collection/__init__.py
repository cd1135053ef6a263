"""The stand's IPython profile and queue server files, shipped with teststand as package data
(`teststand.profile_collection`): startup/, the plan lists and permissions, the HTTP server
config and the simulated stand (stand.yaml). See README.md beside this file."""

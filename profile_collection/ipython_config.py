"""IPython settings of the stand's profile: `teststand shell`, or
`ipython --profile-dir=profile_collection`.

The startup files in startup/ build the RunEngine, the stand, the storage, the display and the
plans (see README.md, "Profile").
"""

c = get_config()  # noqa: F821 (IPython provides it)

# The RunEngine runs plans on its own event loop; with autoawait IPython would run top-level
# `await` and asyncio code at the prompt on a loop of its own (bluesky's advice: switch it off).
c.InteractiveShell.autoawait = False

"""The IV analysis (always: its verdicts are stored with the run) and, in an IPython session only,
the live table, the live IV plot and progress bars. The queue server's worker shows none of them;
it writes the running plan's progress for the queue's clients."""

from teststand.app import profile
from teststand.callbacks.iv_analysis import IVAnalysis

analysis = IVAnalysis(publish=writer.annotate, itk=stand.config.itk)  # noqa: F821 (10_, 20_)
RE.subscribe(analysis)  # noqa: F821

if profile.in_worker():  # the running plan's point and voltage, for `teststand queue status`
    profile.report_progress()
if (_shell := profile.ipython_shell()) is not None:
    from teststand.callbacks.display import install_display

    live_display = install_display(RE, plots=profile.prepare_shell(_shell))  # noqa: F821
    del install_display
del IVAnalysis, _shell

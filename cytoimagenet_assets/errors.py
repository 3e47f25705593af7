"""The one base of the errors a step raises when it cannot finish, so that the Dagster layer turns
each into the same kind of failure (``defs/failures.py``) and the headless tools into one line."""


class StepFailed(Exception):
    """A step that cannot finish; the message names what and where (the source, the file, the row).

    ``retry`` says whether running the step again, unchanged, could succeed (a server, the network, a
    busy file system): the asset's retry policy then runs it again. False where it would fail the
    same way (bad input, a missing upstream result), so a retry would only delay the failure."""

    retry = False

"""Import path the README's seed pattern used for the runtime: `scheduler.db.get_runtime`.

The code lives in `scheduler.runtime.db`; this module only re-exports what task code uses.
"""

from scheduler.runtime.db import get_runtime

__all__ = ["get_runtime"]

"""conda-pack 0.9.2 kept everything in ``conda_pack.core``; scripts still import from it.

The names live in smaller modules now; this one re-exports them.
"""

from .env import CondaEnv, load_environment
from .errors import CondaPackException
from .files import File
from .locate import name_to_prefix
from .packing import pack

__all__ = ["CondaEnv", "CondaPackException", "File", "load_environment", "name_to_prefix", "pack"]

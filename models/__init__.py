"""The model zoo: every architecture name the scripts accept (zoo.py) and the one checkpoint loader."""
from .zoo import *  # noqa: F401,F403 (the registry, and every architecture's constructor by its name)
from .zoo import (FIXED_DEPTH, IMAGENET_MODELS, VARIABLE_DEPTH, base_depth, base_name, build_model, check_name,
                  is_variable_depth, model_dict, other_width, parse_block_depth)
from .loader import (guess_architecture, load_model, name_from_path, read_state_dict,
                     state_dict_shapes)

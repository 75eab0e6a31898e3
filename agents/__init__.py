"""Focus policies pi: stable-baselines3 algorithms and the non-learned baselines, behind one interface."""
from .algorithms import (PolicyFileError, SB3Agent, load_agent, load_algorithm, log_interval, make_algorithm,
                         policy_gmacs, read_policy_file, restore_algorithm, save_agent)
from .base import FocusAgent
from .config import PolicyConfig
from .baselines import CenterAgent, OracleAgent, RandomAgent
from .extractor import GlanceExtractor
from .registry import ALGORITHMS, CONTINUOUS_ONLY, DISCRETE_ONLY, action_kind, resolve_algorithm

__all__ = ["ALGORITHMS", "CONTINUOUS_ONLY", "DISCRETE_ONLY", "CenterAgent", "FocusAgent", "GlanceExtractor",
           "OracleAgent", "PolicyConfig", "PolicyFileError", "RandomAgent", "SB3Agent", "action_kind", "load_agent",
           "load_algorithm", "log_interval", "make_algorithm", "policy_gmacs", "read_policy_file", "resolve_algorithm",
           "restore_algorithm", "save_agent"]

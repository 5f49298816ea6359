"""The demo order board that `statesync dev` serves at /, and its seed catalog."""

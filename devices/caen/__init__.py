"""CAEN high-voltage supplies: 803x (DT8033) and 14xx (N1470) dialects."""

"""Privacy accounting: one module for the engine, secure aggregation and analytics."""
from fl.privacy.accounting import (NoAccountantError, Sampling, gaussian_epsilon, Ledger, epsilon_of_events)

__all__ = ["Sampling", "Ledger", "gaussian_epsilon", "epsilon_of_events", "NoAccountantError"]

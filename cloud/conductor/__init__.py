"""The conductor: drives instance build and delete sagas and persists what agents report."""

"""Client side of the Flower app: one ClientApp for FedAvg, FedProx and FedWSA."""

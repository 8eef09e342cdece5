"""Server side of the Flower app: the FedWSA strategy, the seeded grid, the ServerApp."""

"""State updates f and environment functions g of the step stack."""
from lpm_graph.dynamics.interventions import Intervention, Isolation, Vaccination, VenueClosure
from lpm_graph.dynamics.sampling import Sampler
from lpm_graph.dynamics.seir import SEIR
from lpm_graph.dynamics.transmission import ContactTransmission, Environment, VenueTransmission

__all__ = ["SEIR", "Sampler", "VenueTransmission", "ContactTransmission", "Environment", "Intervention",
           "VenueClosure", "Vaccination", "Isolation"]

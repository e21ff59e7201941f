"""The epidemic: SEIR(D) progression, venue and contact transmission, interventions.

One model among others, built from the core's parts (:mod:`lpm_graph.core`):
``conf/model/seir.yaml``, ``seird.yaml`` and ``contact.yaml`` compose these
processes.
"""
from lpm_graph.models.epidemic.interventions import Isolation, Vaccination, VenueClosure
from lpm_graph.models.epidemic.masks import MaskEffect
from lpm_graph.models.epidemic.seir import SEIR, SIR, SIS, Infectiousness, seir_update
from lpm_graph.models.epidemic.transmission import ContactTransmission, VenueTransmission, contact_scale

__all__ = ["SEIR", "SIR", "SIS", "Infectiousness", "seir_update", "VenueTransmission", "ContactTransmission", "contact_scale",
           "VenueClosure", "Vaccination", "Isolation", "MaskEffect"]

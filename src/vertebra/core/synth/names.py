"""Built-in lists of synthetic names for the identified demo output.

The names are common given names and surnames from many languages, combined at random, so a
demo looks real; every e-mail is at example.org (RFC 2606, reserved), so none can reach anyone.
Patients are synthetic: any resemblance to a real person is chance.
"""

from __future__ import annotations

FEMALE_FIRST = (
    "Anna", "Maria", "Sofia", "Emma", "Olivia", "Amara", "Ingrid", "Leila", "Priya", "Chen",
    "Fatima", "Helen", "Ruth", "Grace", "Julia", "Nadia", "Elena", "Aiko", "Zara", "Lucia",
    "Hanna", "Marta", "Yasmin", "Claire", "Ama", "Freya", "Rosa", "Mei", "Sara", "Irene",
)
MALE_FIRST = (
    "James", "Daniel", "Marco", "Lars", "Omar", "Ravi", "Kenji", "David", "Samuel", "Lucas",
    "Ahmed", "Peter", "Thomas", "Jonas", "Mateo", "Kwame", "Ivan", "Felix", "Hugo", "Erik",
    "Tariq", "Paul", "Noah", "Leon", "Arjun", "Diego", "Henrik", "Wei", "Aleksander", "Ben",
)
LAST = (
    "Andersen", "Okafor", "Lindqvist", "Whitfield", "Okonkwo", "Rossi", "Moreau", "Novak",
    "Kowalski", "Tanaka", "Haddad", "Patel", "Nguyen", "Garcia", "Silva", "Müller", "Berg",
    "Johansson", "Mensah", "Kim", "Cohen", "Dubois", "Fischer", "Hansen", "Ivanova", "Jensen",
    "Khan", "Larsen", "Murphy", "Nakamura", "Oliveira", "Petrov", "Quinn", "Ramos", "Schmidt",
    "Torres", "Usman", "Virtanen", "Walsh", "Yilmaz", "Zhang", "Bianchi", "Costa", "Eriksen",
    "Fernandes", "Gallagher", "Horvat", "Ibrahim", "Kaur", "Lopez",
)

CITY = (
    "Northbridge", "Harbourview", "Eastgate", "Riverside", "Lakemont", "Westfield", "Oakridge",
    "Stonebrook", "Fairhaven", "Kingsport", "Maplewood", "Silverton", "Brookdale", "Highcliff",
)
CLINIC_KIND = (
    "Spine Centre", "Regenerative Spine Clinic", "Orthopaedic Institute", "Pain & Spine Clinic",
    "Back Care Centre", "Musculoskeletal Clinic",
)

EMAIL_DOMAIN = "example.org"

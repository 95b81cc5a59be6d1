"""Words for the demo campus: per-category vocabulary and the templates that turn it into challenge
titles and descriptions. Categories share the templates but not the words, so a content model
(TF-IDF) finds challenges of one category similar, and those about one topic more similar still."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class CategoryText:
    name: str
    topics: tuple[str, ...]  # lower-case noun phrases, used in titles and hooks
    actions: tuple[str, ...]  # title verbs
    hooks: tuple[str, ...]  # opening sentences with a {topic} slot
    methods: tuple[str, ...]
    deliverables: tuple[str, ...]
    partners: tuple[str, ...]
    criteria: tuple[str, ...]
    skills: tuple[str, ...]


# Ring order matters: the demo's taste clusters each like a few neighbouring categories, so
# neighbours here are the ones students tend to combine (Fintech wraps round to Data Science).
CATEGORY_TEXTS: tuple[CategoryText, ...] = (
    CategoryText(
        name="Data Science",
        topics=(
            "bike-share demand",
            "library occupancy",
            "dining hall waste",
            "course drop-out risk",
            "lecture attendance",
            "campus Wi-Fi load",
            "parking availability",
            "exam timetable clashes",
        ),
        actions=("Forecast", "Predict", "Visualize", "Explain"),
        hooks=(
            "The university records data on {topic} every day, yet almost no decision is made "
            "with it.",
            "Nobody on campus can say with confidence what drives {topic}.",
            "Three years of records about {topic} are sitting in a spreadsheet nobody has "
            "analysed.",
        ),
        methods=(
            "clean and join the raw logs, then fit a forecasting model with honest "
            "cross-validation",
            "explore the dataset, engineer features and compare a regression baseline with "
            "gradient boosting",
            "build an interactive dashboard that surfaces trends, seasonality and outliers",
        ),
        deliverables=(
            "a reproducible notebook and a one-page summary for decision makers",
            "a forecast for the next four weeks with calibrated uncertainty",
            "a dashboard that the operations team can refresh without your help",
        ),
        partners=(
            "the office of institutional research",
            "campus operations analysts",
            "the library data team",
        ),
        criteria=(
            "accuracy on a held-out month",
            "clarity of the visualisations",
            "reproducibility of the pipeline",
        ),
        skills=("Python and pandas", "statistics", "SQL"),
    ),
    CategoryText(
        name="Artificial Intelligence",
        topics=(
            "lecture transcript search",
            "student question answering",
            "sign language recognition",
            "plagiarism detection",
            "course recommendation",
            "handwritten note digitisation",
            "accessible image captions",
            "timetable scheduling agents",
        ),
        actions=("Train a Model for", "Prototype", "Automate", "Build an Assistant for"),
        hooks=(
            "Large language models promise to help with {topic}, but campus data has its own "
            "quirks.",
            "Staff and students put hours into {topic} every week, work a well-trained model "
            "could share.",
            "Machine learning for {topic} works in papers; this challenge asks whether it works "
            "here.",
        ),
        methods=(
            "fine-tune a small transformer on an anonymised campus corpus and measure its errors",
            "design an evaluation set first, then iterate on prompts, retrieval and model choice",
            "train a neural network, study its failure cases and document bias risks",
        ),
        deliverables=(
            "a working prototype with a model card describing limits and risks",
            "an evaluation report comparing at least two models on the same test set",
            "a demo that runs on a laptop without a GPU",
        ),
        partners=(
            "the teaching and learning centre",
            "the accessibility services office",
            "the computer science department",
        ),
        criteria=(
            "measured model quality on the shared test set",
            "responsible handling of personal data",
            "quality of the error analysis",
        ),
        skills=("deep learning", "PyTorch", "natural language processing"),
    ),
    CategoryText(
        name="Robotics",
        topics=(
            "library book delivery",
            "greenhouse monitoring",
            "lab sample handling",
            "campus mail sorting",
            "warehouse inventory checks",
            "lawn mowing",
            "deliveries up stairs",
            "lab glassware washing",
        ),
        actions=("Build a Robot for", "Automate", "Design a Rover for", "Prototype"),
        hooks=(
            "Staff still do {topic} by hand, walking kilometres every week.",
            "A small autonomous robot could take over {topic} if it can navigate crowded "
            "corridors safely.",
            "For {topic}, the campus needs a machine that is cheap, safe around people and easy "
            "to repair.",
        ),
        methods=(
            "design the mechanics in CAD, print the parts and program the controller with ROS 2",
            "integrate lidar, wheel odometry and a camera, then tune localisation and path "
            "planning",
            "assemble an Arduino-based prototype and test it against a published safety checklist",
        ),
        deliverables=(
            "a robot that completes the demo course unassisted",
            "open hardware files, firmware and a bill of materials under a set budget",
            "a video of field tests and a short engineering report",
        ),
        partners=(
            "the mechanical engineering workshop",
            "the makerspace technicians",
            "campus facilities",
        ),
        criteria=(
            "reliability across ten timed runs",
            "build cost and repairability",
            "safety around people",
        ),
        skills=("embedded C", "ROS 2", "CAD and 3D printing"),
    ),
    CategoryText(
        name="Renewable Energy",
        topics=(
            "rooftop solar output",
            "battery storage scheduling",
            "micro wind turbines",
            "heat pump retrofits",
            "student residence energy use",
            "solar-powered charging benches",
            "geothermal heating",
            "peak demand shaving",
        ),
        actions=("Optimise", "Design", "Model", "Scale Up"),
        hooks=(
            "The campus wants to run on clean power by 2030, and {topic} is a key piece of that "
            "plan.",
            "Energy bills rose sharply last winter, which makes {topic} suddenly urgent.",
            "Engineers disagree about how much {topic} could contribute to the campus grid.",
        ),
        methods=(
            "simulate the system with real irradiance and load data and size the components",
            "build a scale prototype, measure its efficiency and extrapolate to campus scale",
            "compare scenarios with a simple levelised cost of energy model",
        ),
        deliverables=(
            "a sizing study with payback period and carbon savings",
            "a working prototype with measured efficiency curves",
            "an investment proposal ready for the estates committee",
        ),
        partners=(
            "the campus energy manager",
            "the electrical engineering lab",
            "a regional utility",
        ),
        criteria=(
            "soundness of the energy model",
            "cost and carbon realism",
            "feasibility on our buildings",
        ),
        skills=("power systems", "thermodynamics", "spreadsheet modelling"),
    ),
    CategoryText(
        name="Sustainability",
        topics=(
            "single-use plastic",
            "food waste",
            "biodiversity loss on campus",
            "water waste",
            "recycling contamination",
            "furniture sent to landfill",
            "car commuting",
            "lab energy waste",
        ),
        actions=("Reduce", "Tackle", "Cut", "Measure"),
        hooks=(
            "Every semester the campus falls short of its own targets on {topic}.",
            "Students keep asking what the university is doing about {topic}.",
            "A small behaviour change around {topic} could save resources at the scale of the "
            "whole campus.",
        ),
        methods=(
            "run a waste audit, interview students and staff and design a low-cost intervention",
            "pilot a nudge in one building for two weeks and measure the change against a control",
            "map the material flows and identify the three biggest leverage points",
        ),
        deliverables=(
            "a pilot with before-and-after measurements",
            "a circular economy plan with a budget",
            "a campaign toolkit that residence halls can reuse",
        ),
        partners=(
            "the sustainability office",
            "the student environmental society",
            "the dining services team",
        ),
        criteria=(
            "measured environmental impact",
            "how easily the idea scales across campus",
            "quality of the stakeholder engagement",
        ),
        skills=("life-cycle thinking", "survey design", "community organising"),
    ),
    CategoryText(
        name="Urban Planning",
        topics=(
            "pedestrian crossings",
            "bike lane networks",
            "public space design",
            "student housing",
            "bus routes",
            "night-time lighting",
            "shaded walkways",
            "campus wayfinding",
        ),
        actions=("Redesign", "Map", "Plan", "Reimagine"),
        hooks=(
            "The neighbourhood around campus has grown fast, and nobody has rethought {topic} "
            "since.",
            "City planners have asked students for fresh ideas on {topic}.",
            "Residents and students disagree about {topic}, and data could settle the argument.",
        ),
        methods=(
            "collect field observations, analyse them in GIS and propose a redesign",
            "run a participatory workshop with residents and turn the results into a plan",
            "model foot and bike traffic and test three street layouts",
        ),
        deliverables=(
            "a set of maps and a redesign proposal for the city council",
            "a tactical urbanism pilot with before-and-after counts",
            "a short planning brief with costed options",
        ),
        partners=(
            "the city planning department",
            "the neighbourhood association",
            "the school of architecture",
        ),
        criteria=(
            "use of evidence",
            "feasibility within city rules",
            "inclusiveness of the design",
        ),
        skills=("GIS", "urban design", "public engagement"),
    ),
    CategoryText(
        name="Public Health",
        topics=(
            "student mental health",
            "vaccination uptake",
            "sleep habits",
            "healthy campus food",
            "physical activity",
            "air quality in lecture halls",
            "sexual health awareness",
            "exam-season wellbeing",
        ),
        actions=("Improve", "Promote", "Study", "Rethink"),
        hooks=(
            "In this year's survey, students ranked {topic} among their top concerns.",
            "Health services see a spike in visits linked to {topic} every semester.",
            "Small environmental changes can shift {topic}, but the evidence on our campus is "
            "thin.",
        ),
        methods=(
            "design an anonymous survey, analyse it and co-design an intervention with students",
            "review the epidemiological literature and adapt a proven programme to our campus",
            "run a small randomised trial of a health message and measure the effect",
        ),
        deliverables=(
            "an intervention plan with an evaluation protocol",
            "a peer-reviewed style report on the findings",
            "a campaign tested with real students",
        ),
        partners=(
            "student health services",
            "the school of public health",
            "the counselling centre",
        ),
        criteria=(
            "ethical soundness",
            "strength of the evidence",
            "expected effect on student wellbeing",
        ),
        skills=("epidemiology", "survey methods", "health communication"),
    ),
    CategoryText(
        name="Biotechnology",
        topics=(
            "plant-based proteins",
            "biodegradable packaging",
            "rapid pathogen tests",
            "algae biofuels",
            "enzymes for plastic recycling",
            "gut microbiome tests",
            "lab-grown leather",
            "soil bacteria for crops",
        ),
        actions=("Engineer", "Develop", "Test", "Prototype"),
        hooks=(
            "Biotech start-ups are racing to commercialise {topic}, and the science is moving "
            "fast.",
            "Our labs have the equipment to make real progress on {topic}.",
            "{topic} could replace a polluting industrial process if it can be made cheap enough.",
        ),
        methods=(
            "design and run wet-lab experiments with proper controls and replicate them",
            "analyse sequencing data with a standard bioinformatics pipeline",
            "scale a bench protocol up and measure yield, cost and purity",
        ),
        deliverables=(
            "a lab notebook and a poster presenting the results",
            "a protocol that another team can repeat",
            "a techno-economic sketch of scale-up",
        ),
        partners=(
            "the biology teaching labs",
            "a local biotech incubator",
            "the genomics core facility",
        ),
        criteria=(
            "rigour of the experimental design",
            "reproducibility",
            "commercial and social potential",
        ),
        skills=("molecular biology", "lab safety", "bioinformatics"),
    ),
    CategoryText(
        name="Social Impact",
        topics=(
            "first-generation student mentoring",
            "digital literacy for seniors",
            "refugee mentoring",
            "food bank logistics",
            "volunteer matching",
            "tutoring in local schools",
            "emergency housing help",
            "inclusive sports programmes",
        ),
        actions=("Strengthen", "Scale Up", "Improve", "Rethink"),
        hooks=(
            "Local non-profits tell us they most need student help with {topic}.",
            "Work on {topic} depends on volunteers, and volunteers are hard to keep.",
            "The community around campus would benefit directly from progress on {topic}.",
        ),
        methods=(
            "interview the people affected, map the service journey and find the bottlenecks",
            "co-design a programme with a community partner and pilot it for three weeks",
            "build a theory of change and define indicators the partner can track",
        ),
        deliverables=(
            "a pilot programme with feedback from participants",
            "an impact measurement framework",
            "a handbook the partner organisation can keep using",
        ),
        partners=(
            "the community engagement office",
            "a local food bank",
            "the city volunteer centre",
        ),
        criteria=(
            "depth of community involvement",
            "measurable social impact",
            "sustainability after the semester",
        ),
        skills=("interviewing", "programme design", "non-profit management"),
    ),
    CategoryText(
        name="Design & UX",
        topics=(
            "course registration",
            "the student portal",
            "accessible lecture materials",
            "library search",
            "the campus mobile app",
            "event sign-up",
            "lab booking",
            "international student onboarding",
        ),
        actions=("Redesign", "Simplify", "Prototype", "Fix"),
        hooks=(
            "Students describe {topic} as confusing, slow and frustrating.",
            "Usability tests of {topic} show that half of first-year students give up before "
            "finishing.",
            "The current design of {topic} is years old and was never tested with real users.",
        ),
        methods=(
            "run usability tests, build personas and iterate on wireframes",
            "prototype in Figma, test with at least eight students and refine twice",
            "audit accessibility against WCAG and redesign the worst flows",
        ),
        deliverables=(
            "a clickable prototype with test findings",
            "a design system starter kit",
            "an accessibility audit with prioritised fixes",
        ),
        partners=(
            "the IT services product team",
            "the school of design",
            "student union representatives",
        ),
        criteria=("evidence from user testing", "accessibility", "visual and interaction quality"),
        skills=("user research", "Figma", "interaction design"),
    ),
    CategoryText(
        name="Entrepreneurship",
        topics=(
            "campus food delivery",
            "textbook sharing",
            "student freelancing",
            "peer tutoring marketplaces",
            "event ticketing",
            "second-hand electronics",
            "laundry booking",
            "alumni mentoring",
        ),
        actions=("Launch a Startup for", "Pitch", "Validate", "Build a Business Around"),
        hooks=(
            "Students spend real money on {topic}, and nobody serves them well.",
            "A startup idea around {topic} keeps coming up at every pitch night.",
            "Local investors have asked to see student ventures tackling {topic}.",
        ),
        methods=(
            "interview twenty potential customers and test the riskiest assumption first",
            "build a landing page, run a small ad campaign and measure sign-ups",
            "write a lean canvas, model unit economics and sell a first pilot",
        ),
        deliverables=(
            "a pitch deck and a five-minute pitch to a jury of founders",
            "a validated business model with real customer evidence",
            "a minimum viable product with first paying users",
        ),
        partners=("the campus startup incubator", "alumni founders", "the business school"),
        criteria=(
            "strength of the customer evidence",
            "business model viability",
            "quality of the pitch",
        ),
        skills=("customer discovery", "business modelling", "pitching"),
    ),
    CategoryText(
        name="Finance & Fintech",
        topics=(
            "student budgeting",
            "micro-investing",
            "tuition payment plans",
            "card fraud",
            "campus payment cards",
            "scholarship allocation",
            "crowdfunding for clubs",
            "financial literacy",
        ),
        actions=("Analyse", "Build an App for", "Model", "Improve"),
        hooks=(
            "Many students run out of money before the end of the semester, and {topic} could "
            "help.",
            "Banks are interested in student ideas about {topic}.",
            "The finance office wants a data-driven view of {topic}.",
        ),
        methods=(
            "model cash flows, stress-test the assumptions and build a simple app",
            "analyse anonymised transaction data and detect anomalies with statistical models",
            "benchmark existing fintech products and design a better offer for students",
        ),
        deliverables=(
            "a financial model and an investor-style memo",
            "a working app prototype with real user tests",
            "a risk report with clear recommendations",
        ),
        partners=("the student finance office", "a regional bank", "the economics department"),
        criteria=("financial rigour", "regulatory awareness", "usefulness for students"),
        skills=("corporate finance", "Excel modelling", "risk analysis"),
    ),
)

TITLE_SETTINGS = (
    "on Campus",
    "for First-Year Students",
    "Using Open Data",
    "on a Student Budget",
    "for the City",
    "in Four Weeks",
    "at Scale",
    "for International Students",
)
FORMATS = (
    "Four-Week Sprint",
    "Weekend Hackathon",
    "Design Jam",
    "Semester Project",
    "Open Challenge",
    "Lightning Round",
)
TEAM_SENTENCES = (
    "Work in teams of two to four; no prior experience with {skill} is required.",
    "Solo entries are welcome, but teams mixing {skill} with other backgrounds tend to do best.",
    "Mentors run weekly office hours for anyone new to {skill}.",
)
_SMALL_WORDS = frozenset({"a", "an", "and", "at", "for", "in", "of", "on", "the", "to", "with"})

FIRST_NAMES = (
    "Maya",
    "Liam",
    "Aisha",
    "Noah",
    "Sofia",
    "Mateo",
    "Yuki",
    "Ethan",
    "Amara",
    "Lucas",
    "Priya",
    "Oliver",
    "Zara",
    "Diego",
    "Hana",
    "Samuel",
    "Leila",
    "Jonas",
    "Chloe",
    "Kwame",
    "Elena",
    "Arjun",
    "Freya",
    "Omar",
    "Ines",
    "Tomas",
    "Mei",
    "Felix",
    "Nadia",
    "Ravi",
)
LAST_NAMES = (
    "Chen",
    "Okafor",
    "Garcia",
    "Novak",
    "Schmidt",
    "Haddad",
    "Kowalski",
    "Tanaka",
    "Silva",
    "Dubois",
    "Patel",
    "Nguyen",
    "Larsen",
    "Moreau",
    "Ibrahim",
    "Rossi",
    "Kim",
    "Andersson",
    "Mensah",
    "Horvat",
    "Costa",
    "Murphy",
    "Yilmaz",
    "Fischer",
    "Alvarez",
)


def _pick(rng: np.random.Generator, options: Sequence[str]) -> str:
    return options[int(rng.integers(len(options)))]


def title_case(text: str) -> str:
    # Not str.title(): it lower-cases the rest of each word ("WCAG" -> "Wcag") and capitalises "of".
    words = text.split()
    return " ".join(
        w if (i and w in _SMALL_WORDS) else w[:1].upper() + w[1:] for i, w in enumerate(words)
    )


def compose_title(rng: np.random.Generator, text: CategoryText, topic: str) -> str:
    form = int(rng.integers(3))
    if form == 0:
        return title_case(f"{_pick(rng, text.actions)} {topic}")
    if form == 1:
        return title_case(f"{_pick(rng, text.actions)} {topic} {_pick(rng, TITLE_SETTINGS)}")
    return f"{title_case(topic)}: {_pick(rng, FORMATS)}"


def compose_description(rng: np.random.Generator, text: CategoryText, topic: str) -> str:
    hook = _pick(rng, text.hooks).format(topic=topic)
    sentences = [
        hook[:1].upper() + hook[1:],
        f"Your team will {_pick(rng, text.methods)}.",
        f"By the end you deliver {_pick(rng, text.deliverables)}.",
        f"You will work with {_pick(rng, text.partners)}, "
        "who share data and give feedback at the midpoint review.",
        f"Entries are judged on {_pick(rng, text.criteria)}.",
    ]
    if rng.random() < 0.6:
        sentences.append(_pick(rng, TEAM_SENTENCES).format(skill=_pick(rng, text.skills)))
    return " ".join(sentences)


def person_name(rng: np.random.Generator) -> str:
    return f"{_pick(rng, FIRST_NAMES)} {_pick(rng, LAST_NAMES)}"

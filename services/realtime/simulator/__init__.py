"""A local Realtime server that speaks the GA protocol over a real WebSocket, scripted by a
scenario, so every failure Earpiece must handle can be provoked on demand."""

from services.realtime.simulator.scenario import (
    FunctionCallSpec,
    ResponseSpec,
    Scenario,
    ScenarioError,
    SessionSpec,
    builtin_scenario_names,
    load_builtin_scenario,
    load_scenario,
)
from services.realtime.simulator.server import SimulatorServer, serve_simulator
from services.realtime.simulator.session import SimulatorBug, SimulatorSession, WireRecord
from services.realtime.simulator.voice import silence, synthesize_speech, synthesize_utterance

__all__ = [
    "FunctionCallSpec",
    "ResponseSpec",
    "Scenario",
    "ScenarioError",
    "SessionSpec",
    "SimulatorBug",
    "SimulatorServer",
    "SimulatorSession",
    "WireRecord",
    "builtin_scenario_names",
    "load_builtin_scenario",
    "load_scenario",
    "serve_simulator",
    "silence",
    "synthesize_speech",
    "synthesize_utterance",
]

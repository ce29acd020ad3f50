"""Chat with the assistant inside Jupyter: an ipywidgets panel and IPython magics.

>>> import chatbci
>>> panel = chatbci.chat("my-study")        # shows the panel in the notebook

or, with the magics (``%load_ext chatbci``)::

    %chatbci open my-study
    %%chat
    explore subject 1 of SimulatedMI
    %chatbci export md
"""

from .cards import SuggestionCard
from .panel import ChatPanel, chat, current_panel

__all__ = ["ChatPanel", "SuggestionCard", "chat", "current_panel"]

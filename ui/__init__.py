"""The Streamlit web UI."""

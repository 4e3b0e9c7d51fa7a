"""Adapters to Azure Resource Manager and Resource Graph, through the Azure SDK clients."""

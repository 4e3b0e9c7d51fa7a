// The Event Grid system topic whose source is the maintenance configuration. Deployed into the
// configuration's resource group, in the configuration's region.
//
// Azure allows one system topic per source. If the configuration already has one (the portal
// creates one when you add an event to a schedule), pass its name: deploying this module then
// updates that topic (adds the system-assigned identity) instead of failing on a second one.

@description('System topic name (an existing topic of this configuration, or a new one).')
param name string

@description('Region of the maintenance configuration: a system topic lives in its source\'s region.')
param location string

@description('Resource id of the maintenance configuration.')
param maintenanceConfigurationId string

param tags object = {}

resource systemTopic 'Microsoft.EventGrid/systemTopics@2025-02-15' = {
  name: name
  location: location
  tags: tags
  // The identity dead-letters undeliverable events into the app's storage account, which
  // accepts no shared keys.
  identity: {
    type: 'SystemAssigned'
  }
  properties: {
    source: maintenanceConfigurationId
    topicType: 'Microsoft.Maintenance.MaintenanceConfigurations'
  }
}

output id string = systemTopic.id
output name string = systemTopic.name
output principalId string = systemTopic.identity.principalId

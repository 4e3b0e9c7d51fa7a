// The event subscription that delivers the maintenance configuration's pre- and post-events to
// the intake function. Deployed into the configuration's resource group, on the system topic.
//
// Event Grid checks that the destination function exists when the subscription is created
// ("Destination endpoint not found" otherwise), so this is deployed only once the app's code is
// published: main.bicep's deployEventSubscription parameter, see docs/deploy.md.

@description('Name of the system topic (eventgrid-topic.bicep).')
param systemTopicName string

param name string = 'prepost-intake'

@description('Resource id of the function app.')
param functionAppId string

@description('Name of the Event Grid-triggered function (shared/names.py INTAKE_FUNCTION).')
param intakeFunctionName string

@description('Resource id of the storage account that receives dead-lettered events.')
param deadLetterStorageAccountId string

param deadLetterContainerName string

// Retry policy. Event Grid retries a failed or unanswered delivery (it waits 30 s for an
// answer) after about 10 s, 30 s, 1 min, 5 min, 10 min, 30 min, 1 h, ... until either limit
// is reached, then dead-letters the event about 5 minutes later.
//
// All pre-event work has about 20 minutes: the pre-event arrives at least 30 minutes before
// the start and the run can only be cancelled until about 10 minutes before it. A pre-event
// delivered later than that starts work that can no longer protect the run, so the time to
// live is 20 minutes, which still leaves room for about six attempts (a restart, a cold start
// that timed out, a storage hiccup). The attempt cap of 10 is never the binding limit at this
// time to live; it bounds retries if the time to live is raised.
//
// A post-event that runs out of time is not lost work: the intake schedules a post fallback
// when it accepts the pre-event (window end + PREPOST_SUPPRESSION_GRACE_MINUTES) that undoes
// the pre-work anyway, and the event itself is kept in the dead-letter container for replay.
@minValue(1)
@maxValue(30)
param maxDeliveryAttempts int = 10

@minValue(1)
@maxValue(1440)
param eventTimeToLiveInMinutes int = 20

resource systemTopic 'Microsoft.EventGrid/systemTopics@2025-02-15' existing = {
  name: systemTopicName
}

resource intakeSubscription 'Microsoft.EventGrid/systemTopics/eventSubscriptions@2025-02-15' = {
  parent: systemTopic
  name: name
  properties: {
    destination: {
      endpointType: 'AzureFunction'
      properties: {
        resourceId: '${functionAppId}/functions/${intakeFunctionName}'
        // The Python trigger takes one event per invocation.
        maxEventsPerBatch: 1
        preferredBatchSizeInKilobytes: 64
      }
    }
    // func.EventGridEvent in the intake trigger expects the Event Grid schema.
    eventDeliverySchema: 'EventGridSchema'
    filter: {
      includedEventTypes: [
        'Microsoft.Maintenance.PreMaintenanceEvent'
        'Microsoft.Maintenance.PostMaintenanceEvent'
      ]
    }
    retryPolicy: {
      maxDeliveryAttempts: maxDeliveryAttempts
      eventTimeToLiveInMinutes: eventTimeToLiveInMinutes
    }
    // Written with the system topic's identity (the storage account accepts no shared keys).
    deadLetterWithResourceIdentity: {
      identity: {
        type: 'SystemAssigned'
      }
      deadLetterDestination: {
        endpointType: 'StorageBlob'
        properties: {
          resourceId: deadLetterStorageAccountId
          blobContainerName: deadLetterContainerName
        }
      }
    }
  }
}

output id string = intakeSubscription.id

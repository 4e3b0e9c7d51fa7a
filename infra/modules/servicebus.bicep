// Optional Service Bus transport for plans and VM tasks (PREPOST_TRANSPORT=servicebus).
// Monitoring and outcome messages stay on Storage queues either way.
//
// Queue settings the app relies on:
// - duplicate detection on a 10 minute window: the app gives every message a deterministic
//   MessageId, so a resend after a crash is dropped by the broker instead of repeating work;
// - MaxDeliveryCount 10: after that the message moves to <queue>/$deadletterqueue;
// - lock duration 1 minute: handlers are short (they start long-running ARM operations and
//   reschedule themselves), so a crashed instance releases its messages quickly.

param name string
param location string
param tags object = {}

var queueNames = [
  'prepost-plan'
  'prepost-vm-tasks'
]

resource namespace 'Microsoft.ServiceBus/namespaces@2026-01-01' = {
  name: name
  location: location
  tags: tags
  sku: {
    name: 'Standard'
    tier: 'Standard'
  }
  properties: {
    // Identity only: the app connects with ServiceBusConnection__fullyQualifiedNamespace.
    disableLocalAuth: true
    minimumTlsVersion: '1.2'
    publicNetworkAccess: 'Enabled'
  }
}

resource queues 'Microsoft.ServiceBus/namespaces/queues@2026-01-01' = [
  for queueName in queueNames: {
    parent: namespace
    name: queueName
    properties: {
      requiresDuplicateDetection: true
      duplicateDetectionHistoryTimeWindow: 'PT10M'
      maxDeliveryCount: 10
      lockDuration: 'PT1M'
      deadLetteringOnMessageExpiration: true
      defaultMessageTimeToLive: 'P14D'
      requiresSession: false
      enablePartitioning: false
    }
  }
]

output id string = namespace.id
output name string = namespace.name
// The host name the identity-based connection setting needs, e.g. prepost-sb.servicebus.windows.net,
// taken from the endpoint (https://NAME.servicebus.windows.net:443/) so other clouds work too.
output fullyQualifiedNamespace string = split(split(namespace.properties.serviceBusEndpoint, '//')[1], ':')[0]

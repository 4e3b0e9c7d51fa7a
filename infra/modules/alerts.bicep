// Alerts an operator acts on: messages parked in or moved to poison queues, Service Bus
// dead-letter depth, runs prepost cancelled, and phases that failed or ended with failures.
//
// The log alerts query the Application Insights `traces` table. Each matches the structured
// record (customDimensions.event, written by shared/observability/metrics.py and
// shared/handlers.py when PREPOST_TELEMETRY=on) or the same record's message text (what the
// Functions host forwards when OpenTelemetry is off), so they work either way.
// Storage queue metrics have no per-queue dimension, so poison queues are watched through the
// messages that reach them: parked by prepost, or moved there by the host after
// maxDequeueCount. Service Bus has a per-queue DeadletteredMessages metric: that one is depth.
// https://learn.microsoft.com/azure/azure-monitor/alerts/alerts-create-log-alert-rule
// https://learn.microsoft.com/azure/service-bus-messaging/monitor-service-bus-reference

param namePrefix string
param location string
param tags object = {}

@description('Resource id of the Application Insights component the app logs to.')
param applicationInsightsId string

@description('Service Bus namespace name when PREPOST_TRANSPORT=servicebus; empty for Storage queues only.')
param serviceBusNamespaceName string = ''

@description('Service Bus queues to watch for dead-lettered messages (shared/names.py QueueName, Service Bus transport).')
param serviceBusQueueNames array = [
  'prepost-plan'
  'prepost-vm-tasks'
]

@description('Action groups notified when an alert fires (none: the alerts show in the portal only).')
param actionGroupIds array = []

@description('How often each log alert runs, and the window it looks at.')
param evaluationFrequency string = 'PT5M'
param windowSize string = 'PT15M'

var actions = {
  actionGroups: actionGroupIds
}

var logAlerts = [
  {
    name: 'poison-messages'
    displayName: 'prepost: messages parked in or moved to a poison queue'
    description: 'A work message could not be used (forged, malformed, rejected by its task record) or failed maxDequeueCount times. Inspect with prepost replay poison --dry-run.'
    severity: 2
    query: '''
traces
| where tostring(customDimensions.event) == "message-parked"
    or message startswith "message parked in prepost-"
    or (message has "MaxDequeueCount" and message has "-poison")
| extend queue = coalesce(tostring(customDimensions.queue), extract(@"(prepost-[a-z-]+)-poison", 1, message))
| project timestamp, queue
'''
    dimension: 'queue'
  }
  {
    name: 'cancelled-runs'
    displayName: 'prepost: a maintenance run was cancelled or could not be'
    description: 'Safety pre-work failed or was unfinished at the deadline; prepost decided to cancel the run. See prepost runs show.'
    severity: 1
    query: '''
traces
| where tostring(customDimensions.event) == "run-cancellation"
    or message matches regex @"^run \S+ cancellation[ :]"
| extend run_key = coalesce(tostring(customDimensions.run_key), extract(@"^run (\S+)", 1, message))
| project timestamp, run_key
'''
    dimension: 'run_key'
  }
  {
    name: 'failed-phases'
    displayName: 'prepost: a phase failed or completed with failures'
    description: 'A pre or post phase could not be planned, or some of its tasks failed. See prepost runs show.'
    severity: 2
    query: '''
traces
| where (tostring(customDimensions.event) == "phase-finished" and tostring(customDimensions.status) != "completed")
    or message matches regex @"^(pre|post) phase of run \S+ (completed-with-failures|failed) in "
    or message has " pre phase could not be planned: "
| extend run_key = coalesce(tostring(customDimensions.run_key), extract(@"phase of run (\S+)", 1, message))
| project timestamp, run_key
'''
    dimension: 'run_key'
  }
]

resource logAlertRules 'Microsoft.Insights/scheduledQueryRules@2023-12-01' = [
  for alert in logAlerts: {
    name: '${namePrefix}-${alert.name}'
    location: location
    tags: tags
    kind: 'LogAlert'
    properties: {
      displayName: alert.displayName
      description: alert.description
      severity: alert.severity
      enabled: true
      scopes: [
        applicationInsightsId
      ]
      evaluationFrequency: evaluationFrequency
      windowSize: windowSize
      autoMitigate: true
      criteria: {
        allOf: [
          {
            query: alert.query
            timeAggregation: 'Count'
            operator: 'GreaterThan'
            threshold: 0
            dimensions: [
              {
                name: alert.dimension
                operator: 'Include'
                values: [
                  '*'
                ]
              }
            ]
            failingPeriods: {
              numberOfEvaluationPeriods: 1
              minFailingPeriodsToAlert: 1
            }
          }
        ]
      }
      actions: actions
    }
  }
]

resource serviceBus 'Microsoft.ServiceBus/namespaces@2026-01-01' existing = if (!empty(serviceBusNamespaceName)) {
  name: empty(serviceBusNamespaceName) ? 'unused' : serviceBusNamespaceName
}

resource deadLetterAlert 'Microsoft.Insights/metricAlerts@2018-03-01' = if (!empty(serviceBusNamespaceName)) {
  name: '${namePrefix}-dead-lettered-messages'
  location: 'global'
  tags: tags
  properties: {
    description: 'Messages sit in a Service Bus dead-letter queue. Inspect and send them back with prepost replay deadletter.'
    severity: 2
    enabled: true
    scopes: [
      serviceBus.id
    ]
    evaluationFrequency: 'PT5M'
    windowSize: 'PT15M'
    autoMitigate: true
    criteria: {
      'odata.type': 'Microsoft.Azure.Monitor.SingleResourceMultipleMetricCriteria'
      allOf: [
        {
          criterionType: 'StaticThresholdCriterion'
          name: 'dead-lettered'
          metricNamespace: 'Microsoft.ServiceBus/namespaces'
          metricName: 'DeadletteredMessages'
          dimensions: [
            {
              name: 'EntityName'
              operator: 'Include'
              values: serviceBusQueueNames
            }
          ]
          timeAggregation: 'Maximum'
          operator: 'GreaterThan'
          threshold: 0
        }
      ]
    }
    actions: [
      for actionGroupId in actionGroupIds: {
        actionGroupId: actionGroupId
      }
    ]
  }
}

output logAlertNames array = [for (alert, i) in logAlerts: logAlertRules[i].name]
